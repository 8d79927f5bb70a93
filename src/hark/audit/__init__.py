"""The audit log: who did what to which job, key or voice profile, and when."""
