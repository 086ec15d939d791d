// Package bucketbridge holds what belongs to the project as a whole: its
// HTTP contract.
package bucketbridge

import _ "embed"

// OpenAPI is openapi.yaml, the API's contract, served at /openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
