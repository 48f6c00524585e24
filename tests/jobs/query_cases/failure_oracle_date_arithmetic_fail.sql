-- fail: type_mismatch
SELECT COUNT(*) AS n FROM tax WHERE filed + 100000000 > DATE '2020-01-01'
