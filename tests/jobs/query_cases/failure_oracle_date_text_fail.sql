-- fail: type_mismatch
SELECT COUNT(*) AS n FROM tax WHERE filed = industry
