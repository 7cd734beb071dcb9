variable "region" {
  description = "AWS region of the control plane."
  type        = string
  default     = "ap-northeast-2" # Seoul, as the policy file labels the node

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must look like ap-northeast-2."
  }
}

variable "tailnet" {
  description = "Tailnet ID, or \"-\" for the tailnet that owns the credentials."
  type        = string
  default     = "-"

  validation {
    condition     = length(var.tailnet) > 0
    error_message = "tailnet must not be empty (use \"-\" for the credentials' own tailnet)."
  }
}

variable "tailnet_dns_suffix" {
  description = "MagicDNS suffix of the tailnet (tailXXXX.ts.net), for the FQDN output."
  type        = string
  default     = null
}

variable "flake_url" {
  description = "Flake holding nixosConfigurations.control-plane."
  type        = string
  default     = "github:ducksnest/netd"
}

variable "enable_ssm" {
  description = "Allow SSM Session Manager as a break-glass path (never SSH)."
  type        = bool
  default     = false
}
