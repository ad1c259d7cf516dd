package bmc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stmcginnis/gofish/schemas"
)

func TestDescribeRedfishErrors(t *testing.T) {
	tests := []struct {
		status int
		body   string
		want   string
	}{
		{500, `<html><body><h1>Internal error</h1></body></html>`, "internal server error"},
		{503, `{"error":{"code":"Base.1.8.ServiceTemporarilyUnavailable","message":"See ExtendedInfo",` +
			`"@Message.ExtendedInfo":[{"Message":"The service is temporarily unavailable. Retry in 30 seconds."}]}}`,
			"The service is temporarily unavailable. Retry in 30 seconds."},
		{400, `{"error":{"code":"Base.1.8.PropertyValueNotInList","message":"Bad  value\n for Target"}}`, "Bad value for Target"},
		{404, `not here`, "not here"},
		{401, ``, "unauthorized"},
		{502, strings.Repeat("x", 1000), strings.Repeat("x", 200) + "…"},
	}
	for _, tt := range tests {
		msg, status, _ := describe(fmt.Errorf("wrapped: %w", schemas.ConstructError(tt.status, []byte(tt.body))))
		if msg != tt.want || status != tt.status {
			t.Errorf("%d %.40q: got %q (%d), want %q", tt.status, tt.body, msg, status, tt.want)
		}
	}
}

func TestErrorTemporary(t *testing.T) {
	tests := []struct {
		err  *Error
		want bool
	}{
		{&Error{StatusCode: 503}, true},
		{&Error{StatusCode: 500}, true},
		{&Error{StatusCode: 501}, false},
		{&Error{StatusCode: 412}, true},
		{&Error{StatusCode: 401}, false},
		{&Error{StatusCode: 404}, false},
		{&Error{Err: context.DeadlineExceeded}, true},
		{&Error{Err: context.Canceled}, false},
		{&Error{Err: ErrOverrideReverted}, false},
		{&Error{Err: ErrUnsupported}, false},
		{&Error{Err: errPowerNotReached}, true},
	}
	for _, tt := range tests {
		if got := IsRetryable(fmt.Errorf("ctx: %w", tt.err)); got != tt.want {
			t.Errorf("%#v: retryable %v, want %v", tt.err, got, tt.want)
		}
	}
	if IsRetryable(errors.New("plain")) {
		t.Error("a non-BMC error is not retryable")
	}
	e := &Error{Endpoint: "https://10.0.0.5", Op: "login", StatusCode: 401, Msg: "login refused"}
	if e.Error() != "BMC https://10.0.0.5: login refused (401)" {
		t.Errorf("Error() = %q", e.Error())
	}
}
