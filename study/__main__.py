from study.cli.commands import INTERRUPTED, leave, main, wind_down

try:
    code = main()
except KeyboardInterrupt:  # a Ctrl-C after main's own handler, before wind_down ignores it
    code = INTERRUPTED
finally:
    wind_down()
leave(code)
