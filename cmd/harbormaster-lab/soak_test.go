package main

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestSoakFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--every", "0s"}, "--every 0s: use 1s or more"},
		{[]string{"--sample", "500ms"}, "--sample 500ms: use 1s or more"},
		{[]string{"--duration", "50s"}, "--duration 50s: use at least two --sample periods (1m0s)"},
	} {
		cmd := soakCmd()
		cmd.SetArgs(tc.args)
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		err := cmd.Execute()
		var ee exitError
		if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want exit 2 with %q", tc.args, err, tc.want)
		}
	}
}
