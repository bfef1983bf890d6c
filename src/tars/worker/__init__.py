"""Agent workers: take jobs from the queue and train each in a child process."""
