-- fail: type_mismatch
SELECT COUNT(*) AS n FROM tax WHERE industry IN (1, 2)
