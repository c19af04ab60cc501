from study.cli import main, wind_down

try:
    code = main()
finally:
    wind_down()
raise SystemExit(code)
