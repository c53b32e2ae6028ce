//go:build !race

package snownet

const raceEnabled = false
