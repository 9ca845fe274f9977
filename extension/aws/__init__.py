"""AWS glue: sessions and error translation, the CloudFormation setup, Service Quotas, and the credentials file."""
