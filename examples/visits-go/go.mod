module wafer.example/visits-go

go 1.21

require wafer.dev/guest v0.0.0

replace wafer.dev/guest => ../../guests/go
