-- fail: type_mismatch
SELECT COUNT(*) AS n FROM tax WHERE industry = 1
