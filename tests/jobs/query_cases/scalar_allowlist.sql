-- ok
SELECT LOWER(industry) AS ind, YEAR(filed) AS y, EXTRACT(month FROM filed) AS m, COUNT(*) AS n
FROM tax
WHERE filed BETWEEN DATE '2020-01-01' AND DATE '2023-12-31' AND NOT industry IS NULL
GROUP BY LOWER(industry), YEAR(filed), EXTRACT(month FROM filed)
