module strata.dev/cli

go 1.26.0

require (
	github.com/BurntSushi/toml v1.6.0
	strata.dev/libs v0.0.0
)

replace strata.dev/libs => ../libs

replace strata.dev/proto => ../proto
