package vip

// DropFenceSocket closes the fence's socket as a failed operation does; the
// next operation must reopen it.
func DropFenceSocket(f *NFTFence) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drop()
}
