from study.cli import INTERRUPTED, main, wind_down

try:
    code = main()
except KeyboardInterrupt:  # a Ctrl-C after main's own handler, before wind_down ignores it
    code = INTERRUPTED
finally:
    wind_down()
raise SystemExit(code)
