module github.com/open-telemetry/opentelemetry-collector-contrib/pkg/golden

go 1.24
