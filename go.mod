module github.com/lunway/lunway

go 1.26.8
