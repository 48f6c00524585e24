-- ok
SELECT industry, COUNT(*) AS n FROM tax WHERE industry = 'C' GROUP BY industry
