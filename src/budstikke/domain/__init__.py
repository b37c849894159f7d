"""Pure domain logic with no I/O: statuses, phone numbers, SMS text, validation rules."""
