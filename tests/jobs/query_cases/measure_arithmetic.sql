-- ok
SELECT race, SUM(p.income - t.tax_paid) AS net FROM pums AS p JOIN tax AS t ON p.pid = t.pid GROUP BY race
