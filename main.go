// Command terraform-provider-baremetal is the Terraform provider for
// bare-metal machines driven by baremetal-agent.
package main

import (
	"context"
	"flag"
	"log"
	"os"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"

	"github.com/openbaremetal/terraform-provider-baremetal/provider"
)

// version is set by the release build (goreleaser ldflags).
var version = "dev"

func main() {
	var debug bool
	flag.BoolVar(&debug, "debug", false, "run the provider with support for debuggers like delve")
	flag.Parse()
	if !debug {
		silenceUnseenLogs(os.LookupEnv, os.Setenv)
	}

	err := providerserver.Serve(context.Background(), provider.New(version), providerserver.ServeOpts{
		Address: "registry.terraform.io/openbaremetal/baremetal",
		Debug:   debug,
	})
	if err != nil {
		log.Fatal(err)
	}
}

// sdkLogLevelVars are the variables the plugin SDK reads for its loggers'
// levels: the SDK root, its protocol and framework subsystems, and this
// provider's own logger (TF_LOG_PROVIDER_ plus the provider's name).
var sdkLogLevelVars = []string{"TF_LOG_SDK", "TF_LOG_SDK_PROTO", "TF_LOG_SDK_FRAMEWORK", "TF_LOG_PROVIDER_BAREMETAL"}

// silenceUnseenLogs turns the plugin SDK's loggers off when Terraform will
// not show them. The SDK logs at TRACE unless told otherwise and Terraform
// shows a provider's lines only when TF_LOG or TF_LOG_PROVIDER is set;
// without them every line is formatted as JSON here and parsed and dropped
// by Terraform. Measured on `terraform apply` of 100 machines, that was
// the largest part of the provider's CPU and as much again in Terraform.
// A level the operator set explicitly is left alone.
func silenceUnseenLogs(lookup func(string) (string, bool), set func(string, string) error) {
	for _, v := range []string{"TF_LOG", "TF_LOG_PROVIDER"} {
		if val, ok := lookup(v); ok && val != "" {
			return
		}
	}
	for _, v := range sdkLogLevelVars {
		if _, ok := lookup(v); !ok {
			_ = set(v, "off")
		}
	}
}
