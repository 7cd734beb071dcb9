provider "aws" {
  region = var.region

  default_tags {
    tags = {
      "ducksnest:project" = "ducksnest"
      "ducksnest:repo"    = var.flake_url
    }
  }
}

# Credentials come from the environment: TAILSCALE_OAUTH_CLIENT_ID and
# TAILSCALE_OAUTH_CLIENT_SECRET (an OAuth client with the auth_keys scope that
# owns the node's tags), or TAILSCALE_API_KEY.
provider "tailscale" {
  tailnet = var.tailnet
}
