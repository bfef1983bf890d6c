"""What T.A.R.S. is about, free of any framework: agents, runs, evaluations, users, events."""
