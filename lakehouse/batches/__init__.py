"""One batch's work: bronze, silver's judge-resolve-gate-publish, gold's restatement, the ops records."""
