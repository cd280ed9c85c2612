"""workflows: scheduled, incremental curation workflows whose stages run as Ray jobs (see README, `refinery workflow`)."""
