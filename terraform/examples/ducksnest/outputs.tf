output "instance_id" {
  description = "EC2 instance id of the control plane."
  value       = module.control_plane.instance_id
}

output "private_ip" {
  description = "Private IPv4 address of the control plane."
  value       = module.control_plane.private_ip
}

output "tailscale_hostname" {
  description = "Tailscale machine name of the control plane."
  value       = module.control_plane.tailscale_hostname
}

output "tailscale_fqdn" {
  description = "MagicDNS name of the control plane (when tailnet_dns_suffix is set)."
  value       = module.control_plane.tailscale_fqdn
}
