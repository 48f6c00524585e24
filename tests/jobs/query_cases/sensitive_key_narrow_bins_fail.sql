-- fail: sensitive_key, column: tax.rate
SELECT FLOOR(t.rate / 0.1) AS b, COUNT(*) AS n FROM tax AS t GROUP BY FLOOR(t.rate / 0.1)
