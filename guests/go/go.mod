module wafer.dev/guest

go 1.21
