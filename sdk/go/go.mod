module cdchost/transform

go 1.25
