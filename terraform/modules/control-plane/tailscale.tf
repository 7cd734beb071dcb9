# The node's Tailscale auth key: single use, pre-authorized, tagged (so the
# node belongs to its tags and its node key does not expire with a person's
# login), not ephemeral (a control plane must survive being offline), and
# short-lived: it is only needed for the first boot.
#
# Terraform never manages the tailnet policy (no tailscale_acl anywhere in
# this repository): netd's policy tooling is its one writer, with ETag checks
# (see terraform/README.md). The tags above must exist in that policy.

resource "tailscale_tailnet_key" "node" {
  count = var.create_tailscale_key ? 1 : 0

  reusable      = false
  ephemeral     = false
  preauthorized = true
  expiry        = var.tailscale_key_expiry_seconds
  tags          = var.tailscale_tags
  description   = substr("ducksnest ${var.hostname} first boot", 0, 50) # API limit: 50 characters

  # A used single-use key turns invalid; never mint a new one because of
  # that (it would change the user data of a running node).
  recreate_if_invalid = "never"
}
