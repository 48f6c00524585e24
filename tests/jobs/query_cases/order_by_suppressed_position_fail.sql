-- fail: order_by
SELECT race, COUNT(*) AS n FROM pums GROUP BY race ORDER BY AVG(income) - CASE WHEN race = 1 THEN 40000 ELSE 0 END
