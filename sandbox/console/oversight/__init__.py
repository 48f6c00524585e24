"""The auditor's review queue and ledger browser, and the admin's organisations, users and tokens."""
