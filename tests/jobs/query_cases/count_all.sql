-- ok
SELECT COUNT(*) FROM pums
