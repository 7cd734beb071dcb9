# ---------------------------------------------------------------- naming

variable "name" {
  description = "Name prefix of every resource (and the Name tag)."
  type        = string
  default     = "ducksnest-control-plane"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,38}[a-z0-9]$", var.name))
    error_message = "name must be 3-40 characters of lowercase letters, digits and '-', starting with a letter."
  }
}

variable "tags" {
  description = "Extra tags for every resource that takes tags."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.tags) : !startswith(lower(k), "aws:")])
    error_message = "Tag keys starting with 'aws:' are reserved by AWS."
  }
}

# ---------------------------------------------------------------- network

variable "vpc_id" {
  description = "Existing VPC to use. Null (the default) creates a VPC, a public subnet, an internet gateway and a route table."
  type        = string
  default     = null

  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "subnet_id" {
  description = "Existing subnet (in vpc_id) for the instance. Required exactly when vpc_id is set; the subnet needs a route to the internet (IGW or NAT) for Tailscale, Nix and the flake."
  type        = string
  default     = null

  validation {
    condition     = var.subnet_id == null || can(regex("^subnet-[0-9a-f]{8,17}$", var.subnet_id))
    error_message = "subnet_id must look like subnet-0123456789abcdef0."
  }
  validation {
    condition     = (var.vpc_id == null) == (var.subnet_id == null)
    error_message = "Set vpc_id and subnet_id together (existing network) or neither (the module creates one)."
  }
}

variable "vpc_cidr" {
  description = "CIDR of the VPC the module creates. Must not overlap the cluster's networks (pods 10.244.0.0/16, services 10.96.0.0/12, Tailscale 100.64.0.0/10, home LAN 192.168.0.0/24)."
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition = can(regex("^[0-9.]+/[0-9]+$", var.vpc_cidr)) && try(
      cidrhost(var.vpc_cidr, 0) != "" && tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 28,
    false)
    error_message = "vpc_cidr must be an IPv4 CIDR with a prefix length between /16 and /28 (AWS limits)."
  }
  validation {
    # Two CIDRs overlap when both are the same network once cut to the shorter prefix.
    condition = try(alltrue([
      for n in ["10.244.0.0/16", "10.96.0.0/12", "100.64.0.0/10", "192.168.0.0/24"] :
      cidrsubnet(format("%s/%d", cidrhost(n, 0), min(tonumber(split("/", n)[1]), tonumber(split("/", var.vpc_cidr)[1]))), 0, 0) !=
      cidrsubnet(format("%s/%d", cidrhost(var.vpc_cidr, 0), min(tonumber(split("/", n)[1]), tonumber(split("/", var.vpc_cidr)[1]))), 0, 0)
    ]), true)
    error_message = "vpc_cidr overlaps a cluster network (pods 10.244.0.0/16, services 10.96.0.0/12, Tailscale 100.64.0.0/10 or the home LAN 192.168.0.0/24)."
  }
}

variable "subnet_cidr" {
  description = "CIDR of the public subnet the module creates; null takes the first /24 of vpc_cidr."
  type        = string
  default     = null

  validation {
    condition     = var.subnet_cidr == null || can(regex("^[0-9.]+/[0-9]+$", cidrsubnet(var.subnet_cidr, 0, 0)))
    error_message = "subnet_cidr must be an IPv4 CIDR such as 10.42.1.0/24."
  }
}

variable "availability_zone" {
  description = "Availability zone of the subnet the module creates; null lets AWS choose."
  type        = string
  default     = null

  validation {
    condition     = var.availability_zone == null || can(regex("^[a-z]{2}(-[a-z]+)+-[0-9][a-z]$", var.availability_zone))
    error_message = "availability_zone must look like ap-northeast-2a."
  }
}

variable "associate_public_ip" {
  description = "Give the instance a public IPv4 address. Needed for outbound traffic in the module's own subnet (there is no NAT gateway) and for direct Tailscale connections; only UDP 41641 is open inbound either way."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------- instance

variable "instance_type" {
  description = "EC2 instance type of the control plane."
  type        = string
  default     = "t3.medium"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must look like t3.medium."
  }
}

variable "cpu_credits" {
  description = "CPU credit option of a burstable (t*) instance: standard (no surprise bill) or unlimited."
  type        = string
  default     = "standard"

  validation {
    condition     = contains(["standard", "unlimited"], var.cpu_credits)
    error_message = "cpu_credits must be standard or unlimited."
  }
}

variable "ami_id" {
  description = "Pin the AMI. Null (the default) looks up the newest NixOS image matching ami_name_pattern from ami_owners."
  type        = string
  default     = null

  validation {
    condition     = var.ami_id == null || can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }
}

variable "ami_owners" {
  description = "AWS accounts whose AMIs the lookup accepts. 427812963091 is the NixOS project's account."
  type        = list(string)
  default     = ["427812963091"]

  validation {
    condition     = length(var.ami_owners) > 0 && alltrue([for o in var.ami_owners : can(regex("^[0-9]{12}$", o))])
    error_message = "ami_owners must be a non-empty list of 12-digit AWS account ids."
  }
}

variable "ami_name_pattern" {
  description = "Name pattern of the NixOS AMI lookup (x86_64, hvm, EBS)."
  type        = string
  default     = "nixos/25.05*"

  validation {
    condition     = startswith(var.ami_name_pattern, "nixos/")
    error_message = "ami_name_pattern must start with nixos/ (the NixOS project's image names)."
  }
}

variable "root_volume_size_gib" {
  description = "Size of the encrypted gp3 root volume in GiB (the Nix store lives there)."
  type        = number
  default     = 40

  validation {
    condition     = var.root_volume_size_gib >= 20 && var.root_volume_size_gib <= 1024 && floor(var.root_volume_size_gib) == var.root_volume_size_gib
    error_message = "root_volume_size_gib must be a whole number between 20 and 1024."
  }
}

variable "root_volume_kms_key_id" {
  description = "KMS key ARN for the root volume; null uses the account's default EBS key (still encrypted)."
  type        = string
  default     = null

  validation {
    condition     = var.root_volume_kms_key_id == null || can(regex("^arn:aws[a-z-]*:kms:", var.root_volume_kms_key_id))
    error_message = "root_volume_kms_key_id must be a KMS key ARN."
  }
}

variable "enable_ssm" {
  description = "Attach AmazonSSMManagedInstanceCore so the node can be reached with SSM Session Manager (no SSH port is ever opened). Off by default: the role then has no permissions at all."
  type        = bool
  default     = false
}

variable "termination_protection" {
  description = "Protect the instance from API termination."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------- NixOS and Tailscale

variable "hostname" {
  description = "Host name of the node, also its Tailscale (MagicDNS) name."
  type        = string
  default     = "control-plane"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.hostname))
    error_message = "hostname must be a lowercase RFC 1123 label (letters, digits, '-'; at most 63)."
  }
}

variable "flake_url" {
  description = "Flake that holds nixosConfigurations.<nixos_configuration>, without the #attribute (for example github:ducksnest/netd)."
  type        = string
  default     = "github:ducksnest/netd"

  validation {
    condition     = can(regex("^(github:|gitlab:|git\\+https://|git\\+ssh://|https://|path:)[^#\\s'\"$`\\\\]+$", var.flake_url))
    error_message = "flake_url must be a flake reference (github:, gitlab:, git+https://, git+ssh://, https:// or path:) without '#', spaces, quotes or shell characters."
  }
}

variable "nixos_configuration" {
  description = "Name of the nixosConfigurations entry the node switches to."
  type        = string
  default     = "control-plane"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]+$", var.nixos_configuration))
    error_message = "nixos_configuration must be a plain attribute name."
  }
}

variable "tailscale_tags" {
  description = "ACL tags of the node (the key is tagged, so the node is owned by the tags, not by a person). The tags must exist in tagOwners of netd's policy file."
  type        = list(string)
  default     = ["tag:k8s-node", "tag:aws"]

  validation {
    condition     = length(var.tailscale_tags) > 0 && alltrue([for t in var.tailscale_tags : can(regex("^tag:[A-Za-z0-9][A-Za-z0-9-]*$", t))])
    error_message = "tailscale_tags must be a non-empty list of tags such as tag:k8s-node."
  }
}

variable "create_tailscale_key" {
  description = "Mint a single-use, pre-authorized, tagged, non-ephemeral auth key with the Tailscale provider. Set false and pass tailscale_auth_key to bring your own key."
  type        = bool
  default     = true
}

variable "tailscale_auth_key" {
  description = "Your own Tailscale auth key, used only when create_tailscale_key is false."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.tailscale_auth_key == null || can(regex("^tskey-[A-Za-z0-9-]+$", var.tailscale_auth_key))
    error_message = "tailscale_auth_key must be a Tailscale auth key (tskey-...)."
  }
  validation {
    condition     = var.create_tailscale_key || var.tailscale_auth_key != null
    error_message = "Set tailscale_auth_key when create_tailscale_key is false."
  }
}

variable "tailscale_key_expiry_seconds" {
  description = "Lifetime of the minted auth key. It is single use and only needed for the first boot, so keep it short."
  type        = number
  default     = 3600

  validation {
    condition     = var.tailscale_key_expiry_seconds >= 300 && var.tailscale_key_expiry_seconds <= 86400
    error_message = "tailscale_key_expiry_seconds must be between 300 (5 minutes) and 86400 (1 day)."
  }
}

variable "tailnet_dns_suffix" {
  description = "MagicDNS suffix of the tailnet (for example tail1234.ts.net), used only to build the tailscale_fqdn output; null leaves it null."
  type        = string
  default     = null

  validation {
    condition     = var.tailnet_dns_suffix == null || can(regex("^[a-z0-9-]+(\\.[a-z0-9-]+)+$", var.tailnet_dns_suffix))
    error_message = "tailnet_dns_suffix must be a DNS suffix such as tail1234.ts.net."
  }
}
