package apiserver

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the OpenAPI 3.0 document of this API. TestOpenAPIMatchesRoutes
// keeps its paths and methods equal to the route table, and its schemas'
// properties equal to the wire types' JSON fields.
//
//go:embed openapi.yaml
var OpenAPI []byte

func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(OpenAPI)
	return nil
}
