module github.com/open-telemetry/opentelemetry-collector-contrib/pkg/xk8stest

go 1.24
