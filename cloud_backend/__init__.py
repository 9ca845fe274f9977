"""What runs on the training machine: the trainer, its container, and the AWS infrastructure."""
