-- fail: sensitive_key, column: tax.rate
SELECT t.rate * 2 AS b, COUNT(*) AS n FROM tax AS t GROUP BY t.rate * 2
