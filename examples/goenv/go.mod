module wafer.example/goenv

go 1.21
