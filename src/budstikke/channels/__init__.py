"""Providers that take messages from budstikke: the file outbox, SMTP and SMPP."""
