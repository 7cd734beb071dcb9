# The ducksnest control plane: one NixOS EC2 instance that joins the tailnet
# on first boot and switches to nixosConfigurations.<nixos_configuration>.

locals {
  create_network = var.vpc_id == null
  vpc_id         = local.create_network ? aws_vpc.this[0].id : var.vpc_id
  subnet_id      = local.create_network ? aws_subnet.this[0].id : var.subnet_id

  # Tailscale's WireGuard port: the only inbound port of the node.
  tailscale_port = 41641

  # Outbound rules. Tailscale: HTTPS to the coordination and DERP servers,
  # HTTP for captive-portal checks, UDP (STUN 3478 and peers' WireGuard
  # ports, 41641 or NAT-chosen high ports) to any address. Nix and the flake:
  # HTTPS. DNS, NTP and instance metadata use link-local addresses that
  # security groups do not filter. No rule covers port 22.
  egress_rules = {
    https = { protocol = "tcp", from = 443, to = 443, description = "HTTPS: Tailscale control and DERP, Nix caches, flake inputs" }
    http  = { protocol = "tcp", from = 80, to = 80, description = "HTTP: Tailscale captive-portal checks and DERP fallback" }
    udp   = { protocol = "udp", from = 1024, to = 65535, description = "UDP: STUN 3478 and WireGuard to Tailscale peers" }
  }

  ami_id = var.ami_id != null ? var.ami_id : try(data.aws_ami.nixos[0].id, null)

  # Sensitive: it comes from a sensitive variable or from the key's
  # sensitive attribute, and so does everything built from it.
  tailscale_auth_key = var.create_tailscale_key ? tailscale_tailnet_key.node[0].key : var.tailscale_auth_key
  authkey_path       = "/var/lib/secrets/tailscale-authkey"

  user_data = templatefile("${path.module}/templates/user-data.sh.tftpl", {
    hostname            = var.hostname
    tailscale_auth_key  = local.tailscale_auth_key
    authkey_path        = local.authkey_path
    tailscale_tags      = join(",", var.tailscale_tags)
    flake_url           = var.flake_url
    nixos_configuration = var.nixos_configuration
  })

  tags = merge(var.tags, {
    "ducksnest:role"      = "control-plane"
    "ducksnest:hostname"  = var.hostname
    "ducksnest:managedBy" = "terraform"
  })
}

data "aws_ami" "nixos" {
  count = var.ami_id == null ? 1 : 0

  owners      = var.ami_owners
  most_recent = true

  filter {
    name   = "name"
    values = [var.ami_name_pattern]
  }
  filter {
    name   = "architecture"
    values = ["x86_64"]
  }
  filter {
    name   = "virtualization-type"
    values = ["hvm"]
  }
  filter {
    name   = "root-device-type"
    values = ["ebs"]
  }
}

resource "aws_instance" "this" {
  ami                         = local.ami_id
  instance_type               = var.instance_type
  subnet_id                   = local.subnet_id
  vpc_security_group_ids      = [aws_security_group.node.id]
  associate_public_ip_address = var.associate_public_ip
  iam_instance_profile        = aws_iam_instance_profile.node.name
  disable_api_termination     = var.termination_protection
  source_dest_check           = true
  monitoring                  = false

  user_data                   = local.user_data
  user_data_replace_on_change = false

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 1          # pods cannot reach IMDS through an extra hop
    instance_metadata_tags      = "disabled"
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size_gib
    encrypted             = true
    kms_key_id            = var.root_volume_kms_key_id
    delete_on_termination = true
    tags                  = merge(local.tags, { Name = "${var.name}-root" })
  }

  credit_specification {
    cpu_credits = var.cpu_credits
  }

  tags = merge(local.tags, { Name = var.name })

  lifecycle {
    # The user data only bootstraps the first boot; after that NixOS
    # (nixos-rebuild from the flake) owns the host. A newer AMI or an
    # expired single-use key must not replace a running control plane:
    # use `terraform apply -replace=...` to rebuild it on purpose.
    ignore_changes = [ami, user_data]

    precondition {
      condition     = local.ami_id != null
      error_message = "No NixOS AMI found: set ami_id or check ami_owners/ami_name_pattern for this region."
    }
  }
}
