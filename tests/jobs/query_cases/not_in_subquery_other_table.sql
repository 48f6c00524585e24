-- ok
SELECT industry, COUNT(*) AS n FROM tax WHERE NOT industry IN ('mining', 'retail') GROUP BY industry
