package lab

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// nsID is the id that h's namespace gives the named namespace (-1: none).
func nsID(h *netlink.Handle, name string) (int, error) {
	fd, err := netns.GetFromName(name)
	if err != nil {
		return -1, fmt.Errorf("opening %s: %w", name, err)
	}
	defer fd.Close()
	id, err := h.GetNetNsIdByFd(int(fd))
	if err != nil {
		return -1, fmt.Errorf("netns id of %s: %w", name, err)
	}
	return id, nil
}
