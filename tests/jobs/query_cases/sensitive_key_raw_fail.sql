-- fail: sensitive_key, column: tax.rate
SELECT t.rate, COUNT(*) AS n FROM tax AS t GROUP BY t.rate
