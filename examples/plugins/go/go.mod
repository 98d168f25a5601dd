module cdcplugins

go 1.25

require cdchost/transform v0.0.0

replace cdchost/transform => ../../../sdk/go
