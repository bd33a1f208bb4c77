module wafer.example/hello-go

go 1.21
