module strata.dev/pageserver

go 1.26.0

require (
	strata.dev/libs v0.0.0
	strata.dev/proto v0.0.0
)

replace strata.dev/libs => ../libs

replace strata.dev/proto => ../proto
