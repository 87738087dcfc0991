"""The daily AWS cost report: Cost Explorer → per-tenant unit economics → SES email."""
