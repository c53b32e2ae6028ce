//go:build race

package snownet

// raceEnabled: sync.Pool drops items at random under the race detector,
// so allocation budgets that rely on pools are not checked then.
const raceEnabled = true
