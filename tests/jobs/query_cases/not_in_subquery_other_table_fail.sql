-- fail: subquery
SELECT industry, COUNT(*) AS n FROM tax
WHERE NOT industry IN (SELECT industry FROM tax GROUP BY industry HAVING SUM(tax_paid) < 1000)
GROUP BY industry
