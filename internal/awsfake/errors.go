package awsfake

import (
	"errors"
	"fmt"
	"net/http"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/google/uuid"
)

// ErrResponseLost is returned (wrapped in a *smithy.OperationError) by a call
// whose change was applied but whose response was "lost" by the LoseResponse
// fault: the caller cannot know whether the call took effect, as after a
// connection reset on AWS.
var ErrResponseLost = errors.New("read response: connection reset by peer (awsfake: response lost after the change was applied)")

// Service IDs as the SDK names them in *smithy.OperationError.
const (
	svcSTS = "STS"
	svcIAM = "IAM"
	svcKMS = "KMS"
	svcS3  = "S3"
)

// apiError is an error answered by the service: an API error and the HTTP
// status it came with.
type apiError struct {
	status int
	err    error // a smithy.APIError
}

func (e *apiError) Error() string { return e.err.Error() }
func (e *apiError) Unwrap() error { return e.err }

// newErr returns a generic API error with AWS's code and message.
func newErr(status int, code, format string, args ...any) error {
	fault := smithy.FaultClient
	if status >= 500 {
		fault = smithy.FaultServer
	}
	return &apiError{status: status, err: &smithy.GenericAPIError{Code: code, Message: fmt.Sprintf(format, args...), Fault: fault}}
}

// typed wraps an SDK-modelled error type with its HTTP status.
func typed(status int, err error) error { return &apiError{status: status, err: err} }

// wrapErr turns an error produced inside the fake into what the SDK hands
// its caller: *smithy.OperationError{*awshttp.ResponseError{API error}}.
func wrapErr(service, op string, err error) error {
	if err == nil {
		return nil
	}
	var ae *apiError
	if !errors.As(err, &ae) {
		return &smithy.OperationError{ServiceID: service, OperationName: op, Err: err}
	}
	resp := &http.Response{StatusCode: ae.status, Status: http.StatusText(ae.status), Header: http.Header{}}
	return &smithy.OperationError{
		ServiceID:     service,
		OperationName: op,
		Err: &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: resp}, Err: ae.err},
			RequestID:     uuid.NewString(),
		},
	}
}
