# The ducksnest lab's EC2 side: one t3.medium NixOS control plane that joins
# the tailnet as tag:k8s-node + tag:aws (as the policy file says). The on-prem workers (firebat, ultra,
# old) are NixOS hosts outside Terraform; the tailnet policy (tags, grants,
# autoApprovers) is applied by `netd policy apply`, never by Terraform.

module "control_plane" {
  source = "../../modules/control-plane"

  name                = "ducksnest-control-plane"
  hostname            = "control-plane"
  instance_type       = "t3.medium"
  vpc_cidr            = "10.42.0.0/16"
  flake_url           = var.flake_url
  nixos_configuration = "control-plane"
  tailscale_tags      = ["tag:k8s-node", "tag:aws"]
  tailnet_dns_suffix  = var.tailnet_dns_suffix
  enable_ssm          = var.enable_ssm

  tags = {
    "ducksnest:cluster" = "ducksnest"
  }
}
